"""Stripe's webhooks (issue 9 §3; kijko_core/billing/webhooks.py, decision 0165): real signed
deliveries of the stand-in's events to ``POST /api/v1/webhooks/stripe``, processed by the job
the delivery queued (run here as the other job tests run jobs): the plan follows Stripe's
state whatever order, however often and however late events arrive; forged deliveries store
nothing; failures are retried; the owners are mailed once per failed invoice and dispute."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from kijko_core import jobs
from kijko_core.billing import customers, subscriptions, webhooks
from kijko_core.db.session import system_session
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.billing_kit import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, billing_runtime, stripe_app
from tests.conftest import Account
from tests.realtime import uvicorn_serving
from tests.stripe_server import DEFAULT_KEY, StripeServer
from tests.test_billing_stripe import checkout_completed
from tests.test_cli import kijko_env, run_kijko

URL = "/api/v1/webhooks/stripe"
#: The operation's documented errors (tests/test_openapi_errors.py), each triggered below.
STRIPE_WEBHOOK_OPERATIONS: dict[tuple[str, str], set[str]] = {("post", URL): {"400", "413", "503"}}

ROW = "SELECT * FROM kijko.subscriptions WHERE organization_id = $1"
INBOX = "SELECT * FROM kijko_private.stripe_events WHERE id = $1"
JOBS_OF = "SELECT count(*) FROM kijko.jobs WHERE kind = 'billing.stripe_event' AND payload->>'event_id' = $1"
MAILS = (
    "SELECT template FROM kijko.mail_outbox WHERE organization_id = $1 AND template = ANY($2::text[])"
    " ORDER BY created_at"
)
STORED = "SELECT count(*) FROM kijko_private.stripe_events WHERE id = $1"
GRACE_OVER = "UPDATE kijko.subscriptions SET grace_until = now() - interval '1s' WHERE organization_id = $1"


async def post(client: Any, event: dict[str, Any], secret: str | list[str] = WEBHOOK_SECRET, **options: Any) -> Any:
    """Deliver ``event`` as Stripe does: the body signed (``Stripe-Signature``), as bytes."""
    body, header = StripeServer.signed(event, secret, options.pop("timestamp", None))
    headers = {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}
    return await client.post(URL, data=options.pop("body", body), headers=headers)


async def deliver(client: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = []
    for event in events:
        response = await post(client, event)
        body = await response.get_json()
        assert response.status_code == 200, body
        answers.append(body)
    return answers


async def plan_of(runtime: Kijko, org: UUID) -> str:
    async with customers.billing_session(runtime, org, readonly=True) as db:
        return (await subscriptions.plan_for(db, runtime.plans, org)).id


async def fetchrow(runtime: Kijko, query: str, *args: Any) -> Any:
    async with system_session(runtime.system_db) as db:
        return await db.fetchrow(query, *args)


async def fetchval(runtime: Kijko, query: str, *args: Any) -> Any:
    async with system_session(runtime.system_db) as db:
        return await db.fetchval(query, *args)


async def mails(runtime: Kijko, org: UUID, *templates: str) -> list[str]:
    async with system_session(runtime.system_db) as db:
        return [r["template"] for r in await db.fetch(MAILS, org, list(templates))]


async def subject(runtime: Kijko, org: UUID, template: str) -> str:
    query = "SELECT subject FROM kijko.mail_outbox WHERE organization_id = $1 AND template = $2"
    return str(await fetchval(runtime, query, org, template))


def stripe_sub(server: StripeServer, sub_id: str) -> dict[str, Any]:
    return server.object(sub_id)


# --- the happy path ---------------------------------------------------------------------------


async def test_a_card_checkouts_events_give_the_plan(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        sub_id = await checkout_completed(runtime, stripe_server, org, "card")
        events = stripe_server.events_since(mark)
        answers = await deliver(client, events)
        assert [a["eventId"] for a in answers] == [e["id"] for e in events]
        assert not any(a["duplicate"] for a in answers)
        assert await plan_of(runtime, org) == "free"  # answered before processing
        await run_until_idle(runtime)
        assert await plan_of(runtime, org) == "pro"
        row = await fetchrow(runtime, ROW, org)
        assert (row["stripe_subscription_id"], row["stripe_status"]) == (sub_id, "active")
        for event in events:
            stored = await fetchrow(runtime, INBOX, event["id"])
            assert stored["processed_at"] is not None and stored["attempts"] == 1, event["type"]
            expected = "processed" if event["type"] in webhooks.HANDLED else "ignored"
            assert stored["outcome"] == expected, event["type"]
            assert stored["payload"]["id"] == event["id"] and stored["type"] == event["type"]
            if expected == "processed":
                assert stored["organization_id"] == org


async def test_a_second_completed_checkout_is_cancelled_when_its_event_is_processed(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    # Two Checkouts completed (two tabs past the guards): the webhook alone, without anyone
    # opening a return page, leaves one live subscription — the older — and stores it.
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        first = await checkout_completed(runtime, stripe_server, org, "card")
        second = await checkout_completed(runtime, stripe_server, org, "card")
        await deliver(client, stripe_server.events_since(mark, "checkout.session.completed"))
        await run_until_idle(runtime)
        # The older stays (made in the same second here, so either may be "older").
        statuses = {sub: stripe_server.object(sub)["status"] for sub in (first, second)}
        assert sorted(statuses.values()) == ["active", "canceled"]
        [kept] = [sub for sub, status in statuses.items() if status == "active"]
        row = await fetchrow(runtime, ROW, org)
        assert (row["stripe_subscription_id"], row["stripe_status"]) == (kept, "active")
        assert await plan_of(runtime, org) == "pro"


# --- SEPA: processing grants the plan; a failure days later -------------------------------------


async def test_a_sepa_debit_failing_days_later_is_past_due_mailed_once_then_free_after_the_grace(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        sub_id = await checkout_completed(runtime, stripe_server, org, "sepa_debit", outcome="fail")
        await deliver(client, stripe_server.events_since(mark))
        await run_until_idle(runtime)
        assert await plan_of(runtime, org) == "pro"  # the debit is processing: granted
        assert (await fetchrow(runtime, ROW, org))["payment_processing"]

        stripe_server.advance_time(3 * 86400)
        mark = stripe_server.mark()
        stripe_server.settle()  # the bank returns the debit
        failure = stripe_server.events_since(mark)
        assert {"invoice.payment_failed", "checkout.session.async_payment_failed"} <= {e["type"] for e in failure}
        await deliver(client, failure)
        await run_until_idle(runtime)
        row = await fetchrow(runtime, ROW, org)
        assert row["stripe_subscription_id"] == sub_id
        assert row["stripe_status"] == "past_due" and row["grace_until"] is not None
        assert await plan_of(runtime, org) == "pro"  # within the grace period
        # One mail for the invoice, though two events name its failure.
        assert await mails(runtime, org, "payment_failed") == ["payment_failed"]
        assert await subject(runtime, org, "payment_failed") == "Kijko: a payment for your Pro plan failed"
        # Stripe delivering them again, and an operator replaying them: no second mail.
        again = await deliver(client, failure)
        assert all(a["duplicate"] for a in again)
        for event in failure:
            outcome = await webhooks.process(runtime, event["id"], again=True)
            assert outcome is not None and outcome.outcome in ("processed", "ignored")
        await run_until_idle(runtime)
        assert await mails(runtime, org, "payment_failed") == ["payment_failed"]

        async with system_session(runtime.system_db) as db:
            await db.execute(GRACE_OVER, org)
        assert await plan_of(runtime, org) == "free"  # the free plan's limits now
        # Nothing is deleted: the subscription, the customer and the organization's data stay.
        assert (await fetchrow(runtime, ROW, org))["stripe_subscription_id"] == sub_id
        projects = await client.get("/api/v1/projects", headers=alice.headers)
        assert projects.status_code == 200
        assert await fetchval(runtime, "SELECT count(*) FROM kijko.billing_customers WHERE organization_id = $1", org)


async def test_an_ideal_upgrade_whose_sepa_renewal_fails_mails_the_renewals_failure(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        sub_id = await checkout_completed(runtime, stripe_server, org, "ideal", outcome="fail")
        stripe_server.advance_time(32 * 86400)  # the renewal: a SEPA debit from the iDEAL payment
        assert (await fetchrow(runtime, ROW, org)) is None  # nothing delivered yet
        await deliver(client, stripe_server.events_since(mark))
        await run_until_idle(runtime)
        assert (await fetchrow(runtime, ROW, org))["stripe_status"] == "active"
        assert await mails(runtime, org, "payment_failed") == []
        mark = stripe_server.mark()
        assert stripe_server.settle()  # the bank returns the renewal's debit
        await deliver(client, stripe_server.events_since(mark))
        await run_until_idle(runtime)
        row = await fetchrow(runtime, ROW, org)
        assert (row["stripe_subscription_id"], row["stripe_status"]) == (sub_id, "past_due")
        assert await plan_of(runtime, org) == "pro"  # within the grace period
        assert await mails(runtime, org, "payment_failed") == ["payment_failed"]
        assert await subject(runtime, org, "payment_failed") == "Kijko: the renewal payment for your Pro plan failed"


# --- duplicated, forged, rotated, the other mode ------------------------------------------------


async def test_a_repeated_event_is_stored_and_processed_once(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        [completed] = stripe_server.events_since(mark, "checkout.session.completed")
        first, second = await deliver(client, [completed, completed])
        assert (first["duplicate"], second["duplicate"]) == (False, True)
        assert await fetchval(runtime, STORED, completed["id"]) == 1
        assert await fetchval(runtime, JOBS_OF, completed["id"]) == 1
        await run_until_idle(runtime)
        third = await deliver(client, [completed])
        assert third[0]["duplicate"]
        await run_until_idle(runtime)
        stored = await fetchrow(runtime, INBOX, completed["id"])
        assert stored["attempts"] == 1 and stored["outcome"] == "processed"
        assert await plan_of(runtime, org) == "pro"


async def test_forged_deliveries_are_400_and_store_nothing(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        [event] = stripe_server.events_since(mark, "checkout.session.completed")
        body, _ = StripeServer.signed(event, WEBHOOK_SECRET)
        tampered = body.replace(b'"complete"', b'"expired"')
        assert tampered != body
        forged = [
            await post(client, event, "whsec_someone_else"),
            await post(client, event, body=tampered),
            await post(client, event, timestamp=int(time.time()) - 600),  # older than the tolerance
            await client.post(URL, data=body, headers={"Content-Type": "application/json"}),  # unsigned
            await post(client, event, body=b"not json"),
        ]
        for response in forged:
            answer = await response.get_json()
            assert response.status_code == 400
            assert answer == {
                "detail": "The webhook delivery could not be verified",
                "code": "WEBHOOK_SIGNATURE_INVALID",
                "message": "The webhook delivery could not be verified",
            }
        assert await fetchval(runtime, STORED, event["id"]) == 0
        assert await fetchval(runtime, JOBS_OF, event["id"]) == 0
        # A signed body that is no Stripe event is refused the same way.
        response = await post(client, {"id": "evt_x", "type": "x"})
        assert response.status_code == 400


async def test_the_previous_secret_is_still_accepted_while_rotating(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        events = stripe_server.events_since(mark)
        # Stripe signs with both secrets while a rolled one is live, then with the old alone here.
        assert (await post(client, events[0], [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET])).status_code == 200
        for event in events[1:]:
            assert (await post(client, event, OLD_WEBHOOK_SECRET)).status_code == 200
        await run_until_idle(runtime)
        assert await plan_of(runtime, org) == "pro"


async def test_an_event_of_the_other_mode_is_recorded_and_ignored(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        [event] = stripe_server.events_since(mark, "checkout.session.completed")
        live = {**event, "id": event["id"] + "live", "livemode": True}
        assert (await post(client, live)).status_code == 200
        stored = await fetchrow(runtime, INBOX, live["id"])
        assert stored["outcome"] == "ignored" and "mode" in stored["note"]
        assert await fetchval(runtime, JOBS_OF, live["id"]) == 0
        replayed = await webhooks.process(runtime, live["id"], again=True)
        assert replayed is not None and replayed.outcome == "ignored"
        await run_until_idle(runtime)
        assert await plan_of(runtime, org) == "free"


async def test_without_stripe_the_endpoint_is_503_billing_disabled(client: Any) -> None:
    body, header = StripeServer.signed({"id": "evt_1", "object": "event"}, WEBHOOK_SECRET)
    response = await client.post(URL, data=body, headers={"Stripe-Signature": header})
    assert response.status_code == 503
    assert (await response.get_json())["code"] == "BILLING_DISABLED"


# --- order and time -----------------------------------------------------------------------------


async def test_events_delivered_in_reverse_converge_to_stripes_state(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        sub_id = await checkout_completed(runtime, stripe_server, org, "card")
        stripe_server.client().v1.subscriptions.update(sub_id, {"cancel_at_period_end": True})
        events = stripe_server.events_since(mark)
        await deliver(client, list(reversed(events)))
        await run_until_idle(runtime)
        row = await fetchrow(runtime, ROW, org)
        truth = stripe_sub(stripe_server, sub_id)
        assert (row["stripe_status"], row["cancel_at_period_end"]) == (truth["status"], True)
        assert int(row["current_period_end"].timestamp()) == truth["items"]["data"][0]["current_period_end"]
        assert await plan_of(runtime, org) == "pro"


async def test_a_late_old_subscription_update_changes_nothing(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        sub_id = await checkout_completed(runtime, stripe_server, org, "card")
        stripe = stripe_server.client()
        stripe.v1.subscriptions.update(sub_id, {"cancel_at_period_end": True})
        [cancelling] = stripe_server.events_since(mark, "customer.subscription.updated")[-1:]
        stripe.v1.subscriptions.update(sub_id, {"cancel_at_period_end": False})  # resumed
        newest = stripe_server.events_since(mark)
        await deliver(client, [e for e in newest if e["id"] != cancelling["id"]])
        await run_until_idle(runtime)
        assert not (await fetchrow(runtime, ROW, org))["cancel_at_period_end"]
        assert cancelling["data"]["object"]["cancel_at_period_end"]  # the old copy says cancelling
        await deliver(client, [cancelling])  # delayed
        await run_until_idle(runtime)
        assert (await fetchrow(runtime, INBOX, cancelling["id"]))["outcome"] == "processed"
        row = await fetchrow(runtime, ROW, org)
        assert not row["cancel_at_period_end"] and row["stripe_status"] == "active"


async def test_deliveries_over_real_http_in_any_order(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        async with uvicorn_serving(create_app(kijko=runtime)) as base:
            url = base + URL
            mark = stripe_server.mark()
            sub_id = await checkout_completed(runtime, stripe_server, org, "sepa_debit")
            stripe_server.settle()  # the debit succeeds
            events = stripe_server.events_since(mark)
            stale = await asyncio.to_thread(
                stripe_server.deliver, events[0], url, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600
            )
            assert stale.status == 400
            secrets = [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET]
            deliveries = await asyncio.to_thread(stripe_server.deliver_all, url, secrets, list(reversed(events)))
            assert [d.status for d in deliveries] == [200] * len(events)
            again = await asyncio.to_thread(stripe_server.deliver, events[-1], url, WEBHOOK_SECRET)
            assert again.status == 200 and json.loads(again.body)["duplicate"]
        await run_until_idle(runtime)
        row = await fetchrow(runtime, ROW, org)
        assert (row["stripe_subscription_id"], row["stripe_status"]) == (sub_id, "active")
        assert not row["payment_processing"] and await plan_of(runtime, org) == "pro"


# --- customers, disputes, strangers -------------------------------------------------------------


async def test_a_deleted_customer_is_marked_and_the_subscription_keeps_stripes_last_state(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        sub_id = await checkout_completed(runtime, stripe_server, org, "card")
        customer = stripe_sub(stripe_server, sub_id)["customer"]
        await deliver(client, stripe_server.events_since(mark))
        await run_until_idle(runtime)
        mark = stripe_server.mark()
        stripe_server.client().v1.customers.delete(customer)
        deleted = stripe_server.events_since(mark)
        # The customer's event first: the subscription's cancellation arrives after it.
        await deliver(client, sorted(deleted, key=lambda e: e["type"] != "customer.deleted"))
        await run_until_idle(runtime)
        marked = await fetchrow(runtime, "SELECT * FROM kijko.billing_customers WHERE organization_id = $1", org)
        assert marked["stripe_customer_id"] == customer and marked["deleted_at"] is not None
        row = await fetchrow(runtime, ROW, org)
        assert row["stripe_subscription_id"] == sub_id and row["stripe_status"] == "canceled"
        assert await plan_of(runtime, org) == "free"


async def test_a_dispute_mails_the_owners_once(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        [intent] = [e["data"]["object"]["id"] for e in stripe_server.events_since(mark, "payment_intent.succeeded")]
        mark = stripe_server.mark()
        stripe_server.dispute(intent)
        [dispute] = stripe_server.events_since(mark, "charge.dispute.created")
        await deliver(client, [dispute, dispute])
        await run_until_idle(runtime)
        outcome = await webhooks.process(runtime, dispute["id"], again=True)
        assert outcome is not None and outcome.outcome == "processed"
        await run_until_idle(runtime)
        assert await mails(runtime, org, "dispute_created") == ["dispute_created"]
        assert await subject(runtime, org, "dispute_created") == "Kijko: a payment of 29.00 EUR was disputed"


async def test_events_for_a_customer_that_is_not_ours_are_ignored(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        stripe = stripe_server.client()
        stranger = stripe.v1.customers.create({"email": "someone@elsewhere.test"})
        price = stripe.v1.prices.list({"lookup_keys": ["kijko_pro_monthly"]}).data[0]
        session = stripe.v1.checkout.sessions.create(
            {
                "mode": "subscription",
                "customer": stranger.id,
                "line_items": [{"price": price.id, "quantity": 1}],
                "payment_method_types": ["card"],
                "success_url": "http://elsewhere.test/ok",
                "cancel_url": "http://elsewhere.test/cancel",
            }
        )
        mark = stripe_server.mark()
        stripe_server.complete_checkout(session.id, method="card")
        events = stripe_server.events_since(mark)
        await deliver(client, events)
        await run_until_idle(runtime)
        for event in events:
            stored = await fetchrow(runtime, INBOX, event["id"])
            assert stored["outcome"] == "ignored" and stored["organization_id"] is None, event["type"]
        theirs = "SELECT count(*) FROM kijko.subscriptions WHERE stripe_customer_id = $1"
        assert await fetchval(runtime, theirs, stranger.id) == 0
        assert await plan_of(runtime, org) == "free"


# --- failures, retries, the operators' commands --------------------------------------------------


async def test_a_processing_failure_is_recorded_and_retried(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server, job_retry_base_seconds=0) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        [completed] = stripe_server.events_since(mark, "checkout.session.completed")
        await deliver(client, [completed])
        stripe_server.fail_next(1)  # Stripe fails the first re-read
        await run_until_idle(runtime)  # the retry is due at once (no backoff here): it runs too
        stored = await fetchrow(runtime, INBOX, completed["id"])
        assert stored["attempts"] == 2 and stored["outcome"] == "processed"
        assert "PaymentProviderUnavailable" in stored["last_error"]
        assert await plan_of(runtime, org) == "pro"


async def test_inbox_list_shows_a_failed_event_and_replay_processes_it(
    kijko: Kijko,
    make_settings: Any,
    stripe_server: StripeServer,
    alice: Account,
    database: Any,
    encryption_key: str,
    tmp_path: Path,
) -> None:
    org = UUID(alice.org_id)
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, client):
        mark = stripe_server.mark()
        await checkout_completed(runtime, stripe_server, org, "card")
        [completed] = stripe_server.events_since(mark, "checkout.session.completed")
        await deliver(client, [completed])
        stripe_server.fail_next(1, "reset")
        await run_until_idle(runtime)  # fails; the retry waits for its backoff
        stored = await fetchrow(runtime, INBOX, completed["id"])
        assert stored["processed_at"] is None and stored["attempts"] == 1
        assert stored["next_attempt_at"] is not None and stored["last_error"]
        assert await plan_of(runtime, org) == "free"

        env = kijko_env(
            database,
            encryption_key,
            tmp_path,
            KIJKO_DEFAULT_PLAN="free",
            KIJKO_STRIPE_SECRET_KEY=DEFAULT_KEY,
            KIJKO_STRIPE_WEBHOOK_SECRETS=f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}",
            KIJKO_STRIPE_API_BASE=stripe_server.url,
        )
        listing = run_kijko("billing", "inbox", "list", "--failed", "--limit", "100", env=env, cwd=tmp_path)
        assert listing.returncode == 0, listing.stderr
        lines = [line.split("\t") for line in listing.stdout.splitlines()]
        assert lines[0][:3] == ["id", "type", "state"]
        [failed] = [line for line in lines[1:] if line[0] == completed["id"]]
        assert failed[1:4] == ["checkout.session.completed", "failed", "1"]

        replayed = run_kijko("billing", "inbox", "replay", completed["id"], env=env, cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.splitlines()[-1].startswith(f"{completed['id']} processed")
        assert await plan_of(runtime, org) == "pro"
        stored = await fetchrow(runtime, INBOX, completed["id"])
        assert stored["outcome"] == "processed" and stored["attempts"] == 2 and stored["next_attempt_at"] is None
        listing = run_kijko("billing", "inbox", "list", "--failed", "--limit", "100", env=env, cwd=tmp_path)
        assert completed["id"] not in listing.stdout
        missing = run_kijko("billing", "inbox", "replay", "evt_nothing_here", env=env, cwd=tmp_path)
        assert missing.returncode == 1 and "No stored Stripe event" in missing.stderr
        # The retry job still queued finds the event done and leaves it alone.
        async with system_session(runtime.system_db) as db:
            await db.execute(
                "UPDATE kijko.jobs SET run_after = now() WHERE kind = 'billing.stripe_event' AND state = 'queued'"
                " AND payload->>'event_id' = $1",
                completed["id"],
            )
        await run_until_idle(runtime)
        assert (await fetchrow(runtime, INBOX, completed["id"]))["attempts"] == 2


# --- the documented errors ------------------------------------------------------------------------


async def test_every_documented_error_happens_with_its_documented_code(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, client: Any
) -> None:
    from tests.test_openapi_errors import documented_errors, openapi

    spec = await openapi(client)
    documented = documented_errors(spec, "post", URL)
    assert set(documented) == STRIPE_WEBHOOK_OPERATIONS[("post", URL)] | {"500"}
    event = {"id": "evt_doc", "object": "event", "type": "ping", "created": 1, "livemode": False}
    event["data"] = {"object": {}}
    body, header = StripeServer.signed(event, WEBHOOK_SECRET)
    answers = {"503": await client.post(URL, data=body, headers={"Stripe-Signature": header})}
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, stripe_client):
        answers["400"] = await post(stripe_client, event, "whsec_wrong")
        big = json.dumps({**event, "padding": "x" * (runtime.settings.max_body_bytes + 1)}).encode()
        answers["413"] = await stripe_client.post(URL, data=big, headers={"Stripe-Signature": header})
    for status, response in answers.items():
        code = (await response.get_json())["code"]
        assert response.status_code == int(status), (status, code)
        assert code in documented[status], (status, code)


@pytest.mark.parametrize(
    ("cents", "currency", "shown"), [(2900, "eur", "29.00 EUR"), (5, "usd", "0.05 USD"), (0, "eur", "0.00 EUR")]
)
def test_mail_amounts_are_exact(cents: int, currency: str, shown: str) -> None:
    assert webhooks.money(cents, currency) == shown


async def test_the_sweeper_deletes_done_events_past_the_retention_and_keeps_the_rest(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer
) -> None:
    assert jobs.sweep_steps()["billing_inbox"] is webhooks.sweep_inbox
    insert = (
        "INSERT INTO kijko_private.stripe_events (id, type, livemode, stripe_created, payload, received_at,"
        " processed_at, outcome) VALUES ($1, 'invoice.paid', false, now(), '{}', now() - make_interval(days => $2),"
        " CASE WHEN $3 THEN now() END, CASE WHEN $3 THEN 'processed' END)"
    )
    tag = uuid.uuid4().hex
    events = {
        f"evt_old_done_{tag}": (91, True),
        f"evt_old_pending_{tag}": (400, False),
        f"evt_new_done_{tag}": (89, True),
    }
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, _):
        async with system_session(runtime.system_db) as db:
            for event_id, (days, done) in events.items():
                await db.execute(insert, event_id, days, done)
        assert await webhooks.sweep_inbox(runtime) >= 1
        kept = {event_id for event_id in events if await fetchval(runtime, STORED, event_id)}
    assert kept == {f"evt_old_pending_{tag}", f"evt_new_done_{tag}"}
