"""Kijko's Stripe foundation (kijko_core/billing/stripe_api.py, customers.py, subscriptions.py)
against the Stripe stand-in: one customer per organization however often it is asked for, a
Stripe outage as 503 with nothing stored, the plan an organization gets from its subscription's
state, and no member's SQL session able to give itself a plan."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import stripe

from kijko_core.billing import customers, subscriptions, sync
from kijko_core.billing.stripe_api import API_VERSION, LivemodeMismatch, PaymentProviderUnavailable, Stripe
from kijko_core.db.session import system_session, tenant_session
from kijko_core.runtime import Kijko
from tests.billing_kit import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, billing_runtime
from tests.conftest import Account
from tests.stripe_server import StripeServer

CUSTOMER = "SELECT stripe_customer_id FROM kijko.billing_customers WHERE organization_id = $1"
GRACE_OVER = "UPDATE kijko.subscriptions SET grace_until = now() - interval '1s' WHERE organization_id = $1"
ROW = "SELECT * FROM kijko.subscriptions WHERE organization_id = $1"


def test_the_api_version_is_the_pinned_sdks() -> None:
    # The SDK's models are generated for one version: pinning another would misread objects.
    assert stripe.api_version == API_VERSION


def test_without_a_key_billing_is_off_and_a_key_needs_webhook_secrets(make_settings: Any) -> None:
    assert Stripe.from_settings(make_settings()) is None
    with pytest.raises(Exception, match="KIJKO_STRIPE_WEBHOOK_SECRETS: required"):
        make_settings(stripe_secret_key="sk_test_x")
    with pytest.raises(Exception, match="KIJKO_STRIPE_SECRET_KEY: not a Stripe secret key"):
        make_settings(stripe_secret_key="pk_test_x", stripe_webhook_secrets="whsec_a")
    with pytest.raises(Exception, match="whsec_"):
        make_settings(stripe_secret_key="sk_test_x", stripe_webhook_secrets="whsec_a,nope")


async def test_events_signed_with_either_secret_are_accepted_others_refused(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer
) -> None:
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        account = runtime.stripe
        assert account is not None and not account.livemode
        event = {"id": "evt_1", "object": "event", "type": "customer.created", "livemode": False}
        for secret in (WEBHOOK_SECRET, OLD_WEBHOOK_SECRET):
            body, header = StripeServer.signed(event, secret)
            assert account.construct_event(body, header).id == "evt_1"
        body, header = StripeServer.signed(event, "whsec_someone_else")
        with pytest.raises(stripe.SignatureVerificationError):
            account.construct_event(body, header)
        with pytest.raises(stripe.SignatureVerificationError):
            account.construct_event(body.replace(b"evt_1", b"evt_2"), StripeServer.signed(event, WEBHOOK_SECRET)[1])
        with pytest.raises(LivemodeMismatch):
            account.check_livemode({"livemode": True})


async def test_one_customer_per_organization_even_when_asked_at_once(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        assert runtime.stripe is not None
        first = await asyncio.gather(*(customers.ensure_customer(runtime, runtime.stripe, org) for _ in range(4)))
        again = await customers.ensure_customer(runtime, runtime.stripe, org)
    assert len(set(first)) == 1 and again == first[0]
    made = [o for o in stripe_server.state.of_kind("customer") if o["metadata"].get("organization_id") == str(org)]
    assert [c["id"] for c in made] == [again]
    creates = [r for r in stripe_server.requests if r.method == "POST" and r.path == "/v1/customers"]
    assert creates and all(r.headers.get("idempotency-key", "").startswith("kijko-customer-") for r in creates)


async def test_a_stripe_outage_is_503_and_nothing_is_stored(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        assert runtime.stripe is not None
        stripe_server.fail_next(1, "reset")
        with pytest.raises(PaymentProviderUnavailable):
            await customers.ensure_customer(runtime, runtime.stripe, org)
        async with system_session(runtime.system_db) as db:
            assert not await db.fetchval(CUSTOMER, org)
        made = await customers.ensure_customer(runtime, runtime.stripe, org)  # Stripe is back
    assert made.startswith("cus_")


def stripe_subscription(
    sub_id: str, status: str, *, lookup_key: str = "kijko_pro_monthly", created: int = 1_700_000_000
) -> dict[str, Any]:
    """A subscription as API version API_VERSION shows it (the period on its item)."""
    now = int(datetime.now(UTC).timestamp())
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": "cus_test",
        "status": status,
        "cancel_at_period_end": False,
        "trial_end": None,
        "schedule": None,
        "created": created,
        "items": {
            "data": [
                {
                    "price": {"lookup_key": lookup_key},
                    "current_period_start": now - 86400,
                    "current_period_end": now + 86400 * 29,
                }
            ]
        },
    }


def new_id() -> str:
    return f"sub_{uuid4().hex}"


async def plan_of(runtime: Kijko, org: UUID) -> str:
    async with customers.billing_session(runtime, org, readonly=True) as db:
        return (await subscriptions.plan_for(db, runtime.plans, org)).id


async def store(runtime: Kijko, org: UUID, sub: dict[str, Any], **options: Any) -> bool:
    async with customers.billing_session(runtime, org) as db:
        return await subscriptions.store(db, org, sub, runtime.plans, grace_days=3, **options)


async def test_the_plan_follows_the_subscriptions_state(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        assert await plan_of(runtime, org) == "free"
        sub_a = new_id()
        await store(runtime, org, stripe_subscription(sub_a, "incomplete"))
        assert await plan_of(runtime, org) == "free"
        await store(runtime, org, stripe_subscription(sub_a, "incomplete"), payment_processing=True)
        assert await plan_of(runtime, org) == "pro"  # a first SEPA debit still processing grants it
        await store(runtime, org, stripe_subscription(sub_a, "active", lookup_key="kijko_teams_annually"))
        assert await plan_of(runtime, org) == "teams"
        await store(runtime, org, stripe_subscription(sub_a, "past_due", lookup_key="kijko_teams_annually"))
        assert await plan_of(runtime, org) == "teams"  # within the grace period
        async with system_session(runtime.system_db) as db:
            failed = (await db.fetchrow(ROW, org))["payment_failed_at"]
            await db.execute(GRACE_OVER, org)
        await store(runtime, org, stripe_subscription(sub_a, "past_due", lookup_key="kijko_teams_annually"))
        assert await plan_of(runtime, org) == "free"  # a retry's event does not restart the grace
        async with system_session(runtime.system_db) as db:
            assert (await db.fetchrow(ROW, org))["payment_failed_at"] == failed
        await store(runtime, org, stripe_subscription(sub_a, "active", lookup_key="kijko_teams_annually"))
        async with customers.billing_session(runtime, org, readonly=True) as db:
            shown = await subscriptions.current(db, org)
        assert shown is not None
        assert (shown.plan_id, shown.billing_interval, shown.status) == ("teams", "annually", "active")
        await store(runtime, org, stripe_subscription(sub_a, "canceled", lookup_key="kijko_teams_annually"))
        assert await plan_of(runtime, org) == "free"


async def test_an_older_subscriptions_late_event_does_not_replace_the_current_one(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        old, new = new_id(), new_id()
        assert await store(runtime, org, stripe_subscription(old, "canceled", created=1_700_000_000))
        assert await store(runtime, org, stripe_subscription(new, "active", created=1_700_000_500))
        assert not await store(runtime, org, stripe_subscription(old, "past_due", created=1_700_000_000))
        assert await plan_of(runtime, org) == "pro"
        async with customers.billing_session(runtime, org, readonly=True) as db:
            shown = await subscriptions.current(db, org)
        assert shown is not None and shown.stripe_subscription_id == new


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO kijko.subscriptions (organization_id, stripe_subscription_id, stripe_customer_id, plan_id,"
        " billing_interval, stripe_status, current_period_start, current_period_end, stripe_created)"
        " VALUES ($1, 'sub_x', 'cus_x', 'enterprise', 'monthly', 'active', now(), now() + interval '1 year', now())",
        "UPDATE kijko.subscriptions SET plan_id = 'enterprise' WHERE organization_id = $1",
        "UPDATE kijko.subscriptions SET grace_until = now() + interval '10 years' WHERE organization_id = $1",
        "INSERT INTO kijko.billing_customers (organization_id, stripe_customer_id, livemode)"
        " VALUES ($1, 'cus_x', false)",
        "DELETE FROM kijko.subscriptions WHERE organization_id = $1",
    ],
)
async def test_a_members_session_cannot_give_itself_a_plan(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account, statement: str
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        await store(runtime, org, stripe_subscription(new_id(), "past_due"))
        try:
            async with tenant_session(runtime.app_db, alice.identity) as db:
                status = await db.execute(statement, org)
        except asyncpg.InsufficientPrivilegeError:
            status = "refused"
        # Refused outright (an INSERT, a DELETE), or the row is not the session's to change.
        assert status in ("refused", "UPDATE 0")
        async with system_session(runtime.system_db) as db:
            row = await db.fetchrow(ROW, org)
            customer = await db.fetchval(CUSTOMER, org)
    assert row["plan_id"] == "pro" and row["grace_until"] < datetime.now(UTC) + timedelta(days=4) and customer is None


async def checkout_completed(
    runtime: Kijko, server: StripeServer, org: UUID, method: str, outcome: str = "succeed"
) -> str:
    """A subscription to pro (monthly) made through Checkout and paid with ``method``; its id."""
    assert runtime.stripe is not None
    customer = await customers.ensure_customer(runtime, runtime.stripe, org)
    client = server.client()
    price = client.v1.prices.list({"lookup_keys": ["kijko_pro_monthly"]}).data[0]
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer,
            "line_items": [{"price": price.id, "quantity": 1}],
            "payment_method_types": ["card", "ideal", "sepa_debit"],
            "success_url": "http://app.test/ok",
            "cancel_url": "http://app.test/cancel",
        }
    )
    done = server.complete_checkout(session.id, method=method, outcome=outcome)
    return str(done["subscription"])


async def test_a_refresh_stores_stripes_state_a_processing_sepa_debit_grants_the_plan(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        assert runtime.stripe is not None
        sub_id = await checkout_completed(runtime, stripe_server, org, "sepa_debit", outcome="fail")
        assert await sync.refresh_subscription(runtime, runtime.stripe, org, sub_id)
        assert await plan_of(runtime, org) == "pro"  # the debit is still processing
        async with system_session(runtime.system_db) as db:
            assert (await db.fetchrow(ROW, org))["payment_processing"]
        stripe_server.settle()  # days later the bank returns it
        await sync.refresh_subscription(runtime, runtime.stripe, org, sub_id)
        async with system_session(runtime.system_db) as db:
            row = await db.fetchrow(ROW, org)
        assert not row["payment_processing"] and row["stripe_status"] == "past_due"
        assert row["grace_until"] is not None and await plan_of(runtime, org) == "pro"  # grace
        assert await sync.organization_of(runtime, row["stripe_customer_id"]) == org
        assert await sync.organization_of(runtime, "cus_unknown") is None
