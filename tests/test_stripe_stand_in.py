"""The Stripe stand-in (tests/stripe_server.py) speaks Stripe's protocol: driven only through
the real ``stripe`` SDK (``StripeClient`` pointed at it with ``base_addresses``) and, for
webhooks, real HTTP to a receiver that verifies signatures with the SDK. If these pass, billing
tests run against something that rejects and answers what Stripe rejects and answers."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from tests.net import HttpStandIn
from tests.stripe_server import API_VERSION, DEFAULT_KEY, StripeServer

DAY = 86400
SECRET = "whsec_test_stand_in_secret"


@pytest.fixture
def server() -> Iterator[StripeServer]:
    with StripeServer(api_keys={DEFAULT_KEY, "sk_test_other_account"}) as running:
        yield running


@pytest.fixture
def client(server: StripeServer) -> stripe.StripeClient:
    return server.client()


#: The protocol tests also run against Stripe's test mode when a test key is given, to check
#: that the stand-in answers as Stripe does (docs/billing-testing.md).
STRIPE_TEST_KEY = os.environ.get("KIJKO_TEST_STRIPE_KEY", "")
TARGETS = ["stand-in"] + (["stripe-test-mode"] if STRIPE_TEST_KEY else [])


@dataclass
class Api:
    """A Stripe to run a protocol test against, objects named with a per-test ``tag`` (test
    mode is a shared account) and removed again afterwards."""

    client: stripe.StripeClient
    tag: str
    #: ``base_addresses`` of ``client`` (None: Stripe's own).
    base: dict[str, str] | None = None
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    def with_key(self, api_key: str) -> stripe.StripeClient:
        """The same Stripe with another API key."""
        return stripe.StripeClient(api_key, base_addresses=self.base or {}, max_network_retries=0)

    def customer(self, **params: Any) -> Any:
        customer = self.client.v1.customers.create({"email": f"{self.tag}@example.com", **params})
        self.cleanups.append(lambda: self.client.v1.customers.delete(customer.id))
        return customer

    def price(self, amount: int, interval: str, key: str) -> Any:
        product = self.client.v1.products.create({"name": f"Kijko {key} {self.tag}"})
        self.cleanups.append(lambda: self.client.v1.products.update(product.id, {"active": False}))
        price = self.client.v1.prices.create(
            {
                "product": product.id,
                "unit_amount": amount,
                "currency": "eur",
                "recurring": {"interval": interval},
                "lookup_key": f"{key}_{self.tag}",
            }
        )
        self.cleanups.append(lambda: self.client.v1.prices.update(price.id, {"active": False, "lookup_key": ""}))
        return price


@pytest.fixture(params=TARGETS)
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    tag = uuid.uuid4().hex[:12]
    if request.param == "stand-in":
        with StripeServer() as running:
            yield Api(running.client(), tag, {"api": running.url})
        return
    assert STRIPE_TEST_KEY.startswith(("sk_test_", "rk_test_")), "KIJKO_TEST_STRIPE_KEY must be a test-mode key"
    target = Api(stripe.StripeClient(STRIPE_TEST_KEY, max_network_retries=0), tag)
    yield target
    for cleanup in reversed(target.cleanups):
        cleanup()


def plan(client: stripe.StripeClient, amount: int = 2900, interval: str = "month", key: str = "pro_monthly") -> Any:
    product = client.v1.products.create({"name": f"Kijko {key}"})
    return client.v1.prices.create(
        {
            "product": product.id,
            "unit_amount": amount,
            "currency": "eur",
            "recurring": {"interval": interval},
            "lookup_key": key,
        }
    )


def subscribe(server: StripeServer, client: stripe.StripeClient, price: Any, method: str = "card", **extra: Any) -> Any:
    """A customer, a Checkout Session in subscription mode, completed with ``method``."""
    customer = client.v1.customers.create(
        {"email": "owner@example.com", "metadata": {"organization": "org-1"}, **extra}
    )
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "payment_method_types": ["card", "ideal", "sepa_debit"],
            "success_url": "https://app.example.com/billing?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.example.com/billing",
        }
    )
    server.complete_checkout(session.id, method)
    return client.v1.checkout.sessions.retrieve(session.id, {"expand": ["subscription.latest_invoice"]})


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


# --- protocol --------------------------------------------------------------------------------


def test_it_speaks_the_sdk_pinned_api_version_and_refuses_another(server: StripeServer) -> None:
    customer = server.client().v1.customers.create({"name": "Acme"})
    assert customer.last_response is not None
    assert customer.last_response.headers["Stripe-Version"] == API_VERSION == stripe.api_version
    assert customer.last_response.request_id.startswith("req_")
    assert server.requests[-1].headers["stripe-version"] == API_VERSION

    with pytest.raises(stripe.InvalidRequestError) as raised:
        server.client(stripe_version="2024-06-20").v1.customers.create({"name": "Acme"})
    assert raised.value.http_status == 400
    assert "2024-06-20" in raised.value.user_message


def test_a_wrong_key_gets_stripes_401(api: Api) -> None:
    wrong = api.with_key("sk_test_not_a_real_key_1234")
    with pytest.raises(stripe.AuthenticationError) as raised:
        wrong.v1.customers.list()
    assert raised.value.http_status == 401
    assert raised.value.json_body["error"]["type"] == "invalid_request_error"
    assert raised.value.user_message.startswith("Invalid API Key provided: sk_test_")
    assert raised.value.user_message.endswith("1234")
    assert "not_a_real" not in raised.value.user_message


def test_unknown_parameters_are_rejected_with_their_path(api: Api) -> None:
    client = api.client
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.create({"emial": "typo@example.com"})  # type: ignore[typeddict-unknown-key]
    assert raised.value.http_status == 400
    assert raised.value.code == "parameter_unknown"
    assert raised.value.param == "emial"
    assert raised.value.user_message == "Received unknown parameter: emial"

    product = client.v1.products.create({"name": f"Kijko {api.tag}"})
    api.cleanups.append(lambda: client.v1.products.delete(product.id))
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.prices.create(
            {
                "product": product.id,
                "unit_amount": 100,
                "currency": "eur",
                "recurring": {"interval": "month", "every": "2"},  # type: ignore[typeddict-unknown-key]
            }
        )
    assert (nested.value.code, nested.value.param) == ("parameter_unknown", "recurring[every]")

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.prices.create({"product": product.id, "unit_amount": 100})  # type: ignore[typeddict-item]
    assert (missing.value.code, missing.value.param) == ("parameter_missing", "currency")

    with pytest.raises(stripe.InvalidRequestError) as enum:
        client.v1.prices.create(
            {"product": product.id, "unit_amount": 1, "currency": "eur", "recurring": {"interval": "fortnight"}}
        )  # type: ignore[typeddict-item]
    assert enum.value.param == "recurring[interval]"

    with pytest.raises(stripe.InvalidRequestError) as unknown_id:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert (unknown_id.value.http_status, unknown_id.value.code) == (404, "resource_missing")
    assert unknown_id.value.user_message == "No such customer: 'cus_doesnotexist'"


# --- idempotency -----------------------------------------------------------------------------


def test_the_same_key_and_parameters_replay_the_first_answer(api: Api) -> None:
    client, key = api.client, f"customer-{api.tag}"
    params: Any = {"email": f"{api.tag}@example.com", "metadata": {"organization": api.tag}}
    first = client.v1.customers.create(params, {"idempotency_key": key})
    api.cleanups.append(lambda: client.v1.customers.delete(first.id))
    again = client.v1.customers.create(params, {"idempotency_key": key})

    assert again.id == first.id
    assert again.last_response is not None and first.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert [c.id for c in client.v1.customers.list({"email": f"{api.tag}@example.com"}).data] == [first.id]


def test_a_replay_causes_no_second_event(server: StripeServer, client: stripe.StripeClient) -> None:
    params: Any = {"email": "owner@example.com", "metadata": {"organization": "org-1"}}
    first = client.v1.customers.create(params, {"idempotency_key": "org-1-customer"})
    client.v1.customers.create(params, {"idempotency_key": "org-1-customer"})
    assert first.last_response is not None
    assert types(server.events) == ["customer.created"]
    assert server.events[0]["request"] == {"id": first.last_response.request_id, "idempotency_key": "org-1-customer"}


def test_the_same_key_with_other_parameters_or_endpoint_is_an_idempotency_error(api: Api) -> None:
    client, key = api.client, f"k-{api.tag}"
    first = client.v1.customers.create({"email": f"{api.tag}@example.com"}, {"idempotency_key": key})
    api.cleanups.append(lambda: client.v1.customers.delete(first.id))
    with pytest.raises(stripe.IdempotencyError) as other_params:
        client.v1.customers.create({"email": f"other-{api.tag}@example.com"}, {"idempotency_key": key})
    assert other_params.value.http_status == 400
    assert other_params.value.json_body["error"]["type"] == "idempotency_error"
    assert "same parameters" in other_params.value.user_message

    with pytest.raises(stripe.IdempotencyError) as other_endpoint:
        client.v1.products.create({"name": "Pro"}, {"idempotency_key": key})
    assert "same endpoint" in other_endpoint.value.user_message
    assert len(client.v1.customers.list({"email": f"{api.tag}@example.com"}).data) == 1


def test_a_request_that_failed_validation_stores_nothing_under_its_key(api: Api) -> None:
    client, key = api.client, f"retry-{api.tag}"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create({"nam": "typo"}, {"idempotency_key": key})  # type: ignore[typeddict-unknown-key]
    fixed = client.v1.customers.create({"name": "Fixed", "email": f"{api.tag}@example.com"}, {"idempotency_key": key})
    api.cleanups.append(lambda: client.v1.customers.delete(fixed.id))
    assert fixed.name == "Fixed"


def test_keys_are_scoped_per_api_key(server: StripeServer) -> None:
    ours, theirs = server.client(), server.client("sk_test_other_account")
    mine = ours.v1.customers.create({"name": "Ours"}, {"idempotency_key": "shared"})
    other = theirs.v1.customers.create({"name": "Theirs"}, {"idempotency_key": "shared"})
    assert mine.id != other.id


def test_an_outage_answers_500_or_resets_and_does_nothing(server: StripeServer, client: stripe.StripeClient) -> None:
    server.fail_next(1, "500")
    with pytest.raises(stripe.APIError) as raised:
        client.v1.customers.create({"name": "Acme"}, {"idempotency_key": "outage-1"})
    assert raised.value.http_status == 500
    server.fail_next(1, "reset")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create({"name": "Acme"}, {"idempotency_key": "outage-1"})
    assert client.v1.customers.list().data == []

    # The SDK's own retries carry one idempotency key through an outage: one customer.
    retrying = server.client(max_network_retries=3)
    server.fail_next(2, "500")
    customer = retrying.v1.customers.create({"name": "Acme"})
    posts = [r for r in server.requests if r.method == "POST"]
    assert len({r.headers["idempotency-key"] for r in posts[-3:]}) == 1
    assert [c.id for c in client.v1.customers.list().data] == [customer.id]


# --- expand, lists, search -------------------------------------------------------------------


def test_expand_follows_stripes_expandable_and_includable_fields(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    session = subscribe(server, client, plan(client))
    subscription = session.subscription
    assert subscription.object == "subscription"
    assert subscription.latest_invoice.object == "invoice"
    assert isinstance(subscription.customer, str)

    deep = client.v1.invoices.retrieve(
        subscription.latest_invoice.id,
        {"expand": ["payments.data.payment.payment_intent", "parent.subscription_details.subscription", "customer"]},
    )
    assert deep.customer.email == "owner@example.com"
    assert deep.parent.subscription_details.subscription.id == subscription.id
    intent = deep.payments.data[0].payment.payment_intent
    assert (intent.object, intent.status) == ("payment_intent", "succeeded")
    assert "payments" not in client.v1.invoices.retrieve(deep.id)  # includable: absent unless expanded

    items = client.v1.subscriptions.retrieve(subscription.id, {"expand": ["items.data.price.product"]})
    assert items["items"].data[0].price.product.name == "Kijko pro_monthly"


def test_expand_refuses_what_stripe_refuses(api: Api) -> None:
    client = api.client
    customer = api.customer()
    with pytest.raises(stripe.InvalidRequestError) as not_expandable:
        client.v1.customers.retrieve(customer.id, {"expand": ["metadata"]})
    assert not_expandable.value.user_message == "This property cannot be expanded (metadata)."
    with pytest.raises(stripe.InvalidRequestError) as on_a_list:
        client.v1.prices.list({"expand": ["product"]})
    assert "You may want to try expanding 'data.product' instead." in on_a_list.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as too_deep:
        client.v1.invoices.list({"expand": ["data.payments.data.payment.payment_intent"]})
    assert too_deep.value.user_message == "You cannot expand more than 4 levels of a property."


def test_lists_paginate_newest_first_with_has_more(api: Api) -> None:
    client, email = api.client, f"{api.tag}@example.com"
    created = {api.customer(name=f"c{index}").id for index in range(7)}
    first = client.v1.customers.list({"email": email, "limit": 3})
    second = client.v1.customers.list({"email": email, "limit": 3, "starting_after": first.data[-1].id})
    third = client.v1.customers.list({"email": email, "limit": 3, "starting_after": second.data[-1].id})
    pages = [c.id for c in first.data + second.data + third.data]
    assert (len(first.data), len(second.data), len(third.data)) == (3, 3, 1)
    assert first.has_more and second.has_more and not third.has_more
    assert len(pages) == len(set(pages)) and set(pages) == created
    stamps = [c.created for c in first.data + second.data + third.data]
    assert stamps == sorted(stamps, reverse=True)
    before = client.v1.customers.list({"email": email, "limit": 2, "ending_before": third.data[0].id})
    assert [c.id for c in before.data] == pages[4:6]
    assert [c.id for c in client.v1.customers.list({"email": email, "limit": 2}).auto_paging_iter()] == pages
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        client.v1.customers.list({"limit": 101})
    assert too_many.value.param == "limit"


def test_the_stand_in_lists_in_creation_order_within_a_second(client: stripe.StripeClient) -> None:
    created = [client.v1.customers.create({"name": f"c{index}"}).id for index in range(5)]
    assert [c.id for c in client.v1.customers.list().data] == created[::-1]


def test_prices_by_lookup_key(api: Api) -> None:
    client = api.client
    monthly, yearly = api.price(2900, "month", "pro_monthly"), api.price(28800, "year", "pro_yearly")
    api.price(7900, "month", "teams_monthly")
    keys = [f"pro_monthly_{api.tag}", f"pro_yearly_{api.tag}"]
    found = client.v1.prices.list({"lookup_keys": keys, "expand": ["data.product"]})
    assert {p.id for p in found.data} == {monthly.id, yearly.id}
    assert {p.product.name for p in found.data} == {f"Kijko pro_monthly {api.tag}", f"Kijko pro_yearly {api.tag}"}
    assert {(p.unit_amount, p.currency, p.recurring.interval) for p in found.data} == {
        (2900, "eur", "month"),
        (28800, "eur", "year"),
    }
    with pytest.raises(stripe.InvalidRequestError):
        api.price(3100, "month", "pro_monthly")  # a lookup key is unique unless transferred


def test_customers_by_metadata(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"metadata": {"organization": "org-7"}})
    client.v1.customers.create({"metadata": {"organization": "org-8"}})
    hits = client.v1.customers.search({"query": "metadata['organization']:'org-7'"})
    assert [c.id for c in hits.data] == [customer.id]


# --- checkout, subscriptions, invoices -------------------------------------------------------


def test_checkout_with_a_card_makes_an_active_subscription_and_a_paid_invoice(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    price = plan(client)
    customer = client.v1.customers.create({"email": "owner@example.com"})
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "payment_method_types": ["card", "ideal", "sepa_debit"],
            "success_url": "https://app.example.com/ok",
            "cancel_url": "https://app.example.com/cancel",
            "subscription_data": {"metadata": {"organization": "org-1"}},
        }
    )
    assert session.url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert (session.status, session.payment_status, session.subscription) == ("open", "unpaid", None)
    mark = server.mark()

    server.complete_checkout(session.id, "card")

    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["subscription", "customer"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    sub = done.subscription
    assert (sub.status, sub.customer, sub.metadata["organization"]) == ("active", customer.id, "org-1")
    item = sub["items"].data[0]
    assert item.price.id == price.id
    assert item.current_period_end > item.current_period_start
    assert "current_period_end" not in sub  # on the items in this API version
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == ("paid", 2900, "subscription_create")
    assert invoice.hosted_invoice_url.startswith("https://invoice.stripe.com/i/")
    assert invoice.invoice_pdf.startswith("https://pay.stripe.com/invoice/")
    methods = client.v1.customers.payment_methods.list(customer.id)
    assert [m.type for m in methods.data] == ["card"] and sub.default_payment_method == methods.data[0].id
    happened = types(server.events_since(mark))
    for expected in (
        "payment_method.attached",
        "customer.subscription.created",
        "invoice.finalized",
        "invoice.paid",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ):
        assert expected in happened
    assert happened[-1] == "checkout.session.completed"
    assert happened.index("customer.subscription.created") < happened.index("invoice.paid")


def test_ideal_then_sepa_renewal_processing_then_paid(server: StripeServer, client: stripe.StripeClient) -> None:
    session = subscribe(server, client, plan(client), "ideal")
    sub = session.subscription
    assert (session.payment_status, sub.status) == ("paid", "active")
    method = client.v1.payment_methods.retrieve(sub.default_payment_method)
    assert method.type == "sepa_debit" and method.sepa_debit.generated_from.charge.startswith("ch_")

    mark = server.mark()
    server.advance_time(32 * DAY)
    renewal = client.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (renewal.billing_reason, renewal.status) == ("subscription_cycle", "open")
    assert "payment_intent.processing" in types(server.events_since(mark))
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active"  # a processing SEPA debit keeps the plan
    assert renewed["items"].data[0].current_period_start == sub["items"].data[0].current_period_end

    server.settle(succeeded=True)
    assert client.v1.invoices.retrieve(renewal.id).status == "paid"
    assert types(server.events_since(mark))[-3:] == [
        "payment_intent.succeeded",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]


def test_sepa_checkout_processing_then_failure_days_later(server: StripeServer, client: stripe.StripeClient) -> None:
    session = subscribe(server, client, plan(client), "sepa_debit")
    assert (session.payment_status, session.subscription.status) == ("unpaid", "active")
    assert "payment_intent.processing" in types(server.events)
    mark = server.mark()

    days_later = server.advance_time(4 * DAY)
    server.settle(succeeded=False)

    happened = server.events_since(mark)
    assert types(happened) == [
        "charge.failed",
        "payment_intent.payment_failed",
        "invoice.payment_failed",
        "customer.subscription.updated",
        "checkout.session.async_payment_failed",
    ]
    assert happened[3]["data"]["previous_attributes"] == {"status": "active"}
    assert happened[3]["data"]["object"]["status"] == "past_due"
    assert happened[0]["created"] >= days_later  # events carry the stand-in's clock
    assert client.v1.subscriptions.retrieve(session.subscription.id).status == "past_due"


def test_a_test_clock_renews_its_customers_subscription(server: StripeServer, client: stripe.StripeClient) -> None:
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start, "name": "renewal"})
    session = subscribe(server, client, plan(client), "card", test_clock=clock.id)
    sub = session.subscription
    assert sub["items"].data[0].current_period_start == start
    assert sub["items"].data[0].current_period_end == start + 31 * DAY  # 1 February

    advanced = client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": start + 60 * DAY})
    assert advanced.status == "advancing"
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready"

    invoices = client.v1.invoices.list({"customer": session.customer, "limit": 2})
    assert [i.billing_reason for i in invoices.data] == ["subscription_cycle", "subscription_cycle"]
    assert all(i.status == "paid" and i.amount_paid == 2900 for i in invoices.data)
    assert invoices.data[0].period_start == start + (31 + 28) * DAY  # 1 March
    assert invoices.data[0].created == start + (31 + 28) * DAY
    assert (
        client.v1.invoices.list(
            {"customer": session.customer, "limit": 2, "starting_after": invoices.data[-1].id}
        ).has_more
        is False
    )
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed["items"].data[0].current_period_end == start + (31 + 28 + 31) * DAY
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": start})


def test_an_upgrade_prorates_and_invoices_now(server: StripeServer, client: stripe.StripeClient) -> None:
    pro, teams = plan(client, 2900, "month", "pro_monthly"), plan(client, 7900, "month", "teams_monthly")
    session = subscribe(server, client, pro)
    sub = session.subscription
    server.advance_time(10 * DAY)
    item = sub["items"].data[0]

    updated = client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": item.id, "price": teams.id}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
        {"idempotency_key": f"upgrade-{sub.id}"},
    )
    assert updated["items"].data[0].id == item.id and updated["items"].data[0].price.id == teams.id
    invoice = updated.latest_invoice
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "paid")
    credit, charge = (line.amount for line in invoice.lines.data)
    assert credit < 0 < charge and -credit < 2900 and charge < 7900
    assert invoice.total == credit + charge
    assert abs(charge * 2900 + credit * 7900) <= 7900  # the same remaining fraction on both lines
    assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)
    event = server.events_since(0, "customer.subscription.updated")[-1]  # the change and its invoice, one event
    assert event["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"] == pro.id
    assert event["data"]["previous_attributes"]["latest_invoice"] == sub.latest_invoice.id
    assert event["data"]["object"]["latest_invoice"] == invoice.id


def test_a_downgrade_at_period_end_with_a_schedule(server: StripeServer, client: stripe.StripeClient) -> None:
    teams, pro = plan(client, 7900, "month", "teams_monthly"), plan(client, 2900, "month", "pro_monthly")
    sub = subscribe(server, client, teams).subscription
    schedule = client.v1.subscription_schedules.create({"from_subscription": sub.id})
    assert (schedule.status, schedule.subscription, schedule.end_behavior) == ("active", sub.id, "release")
    current = schedule.phases[0]
    client.v1.subscription_schedules.update(
        schedule.id,
        {
            "phases": [
                {
                    "items": [{"price": teams.id, "quantity": 1}],
                    "start_date": current.start_date,
                    "end_date": current.end_date,
                },
                {"items": [{"price": pro.id, "quantity": 1}], "duration": {"interval": "month", "interval_count": 1}},
            ],
            "end_behavior": "release",
        },
    )
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == teams.id

    server.advance_time(32 * DAY)
    downgraded = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice", "schedule"]})
    assert downgraded["items"].data[0].price.id == pro.id
    assert downgraded.latest_invoice.amount_due == 2900
    assert downgraded.schedule.current_phase.start_date == current.end_date

    server.advance_time(31 * DAY)
    released = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (released.status, released.released_subscription) == ("released", sub.id)
    assert client.v1.subscriptions.retrieve(sub.id).schedule is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.release(schedule.id)


def test_cancel_at_period_end_resume_and_the_end(server: StripeServer, client: stripe.StripeClient) -> None:
    sub = subscribe(server, client, plan(client)).subscription
    end = sub["items"].data[0].current_period_end
    canceling = client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    assert (canceling.status, canceling.cancel_at_period_end, canceling.cancel_at) == ("active", True, end)
    resumed = client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": False})
    assert (resumed.cancel_at_period_end, resumed.cancel_at, resumed.canceled_at) == (False, None, None)

    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    mark = server.mark()
    server.advance_time(32 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert types(server.events_since(mark)) == ["customer.subscription.deleted"]
    assert client.v1.subscriptions.list({"customer": sub.customer}).data == []
    assert [s.id for s in client.v1.subscriptions.list({"customer": sub.customer, "status": "canceled"}).data] == [
        sub.id
    ]


def test_payment_methods_attach_default_and_detach(server: StripeServer, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"name": "Acme"})
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    assert (card.customer, card.card.last4) == (customer.id, "4242")
    updated = client.v1.customers.update(
        customer.id,
        {
            "invoice_settings": {"default_payment_method": card.id},
            "expand": ["invoice_settings.default_payment_method"],
        },
    )
    assert updated.invoice_settings.default_payment_method.card.brand == "visa"
    assert [m.id for m in client.v1.payment_methods.list({"customer": customer.id, "type": "card"}).data] == [card.id]

    mark = server.mark()
    client.v1.payment_methods.detach(card.id)
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert client.v1.customers.payment_methods.list(customer.id).data == []
    detached, customer_updated = server.events_since(mark)
    assert (detached["type"], detached["data"]["previous_attributes"]) == (
        "payment_method.detached",
        {"customer": customer.id},
    )
    assert customer_updated["data"]["previous_attributes"] == {"invoice_settings": {"default_payment_method": card.id}}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": card.id}})


def test_checkout_in_setup_mode_adds_a_sepa_debit_method(server: StripeServer, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"name": "Acme"})
    session = client.v1.checkout.sessions.create(
        {
            "mode": "setup",
            "customer": customer.id,
            "payment_method_types": ["sepa_debit"],
            "success_url": "https://app.example.com/ok",
        }
    )
    assert session.payment_status == "no_payment_required"
    server.complete_checkout(session.id, "sepa_debit")
    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["setup_intent.payment_method"]})
    assert done.status == "complete"
    assert (done.setup_intent.status, done.setup_intent.payment_method.type) == ("succeeded", "sepa_debit")
    assert done.setup_intent.payment_method.customer == customer.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create({"mode": "setup", "customer": customer.id})  # no currency, no types


def test_customer_details_tax_ids_portal_and_deletion(server: StripeServer, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"name": "Acme BV"})
    updated = client.v1.customers.update(
        customer.id, {"address": {"line1": "Damrak 1", "postal_code": "1012 LG", "city": "Amsterdam", "country": "NL"}}
    )
    assert updated.address.city == "Amsterdam" and updated.address.line2 is None
    previous = server.events[-1]["data"]["previous_attributes"]
    assert previous == {"address": None}
    # An empty value unsets one line of the address (null), the others stay.
    cleared = client.v1.customers.update(customer.id, {"address": {"city": "", "line2": ""}})
    assert cleared.address.city is None and cleared.address.line1 == "Damrak 1"
    client.v1.customers.update(customer.id, {"address": {"city": "Amsterdam"}})
    tax = client.v1.customers.tax_ids.create(customer.id, {"type": "eu_vat", "value": "NL123456789B01"})
    assert (tax.country, tax.verification.status) == ("NL", "pending")
    with_ids = client.v1.customers.retrieve(customer.id, {"expand": ["tax_ids"]})
    assert [t.value for t in with_ids.tax_ids.data] == ["NL123456789B01"]

    portal = client.v1.billing_portal.sessions.create(
        {"customer": customer.id, "return_url": "https://app.example.com/billing"}
    )
    assert portal.url.startswith("https://billing.stripe.com/p/session/test_")

    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(customer.id).deleted is True
    assert types(server.events)[-1] == "customer.deleted"


def test_a_dispute_is_an_event(server: StripeServer, client: stripe.StripeClient) -> None:
    session = subscribe(server, client, plan(client))
    invoice = client.v1.invoices.retrieve(session.subscription.latest_invoice.id, {"expand": ["payments"]})
    server.dispute(invoice.payments.data[0].payment.payment_intent)
    event = server.events[-1]
    assert event["type"] == "charge.dispute.created"
    assert (event["data"]["object"]["amount"], event["data"]["object"]["status"]) == (2900, "needs_response")


# --- webhooks --------------------------------------------------------------------------------


class Receiver(HttpStandIn):
    """A webhook endpoint that verifies each delivery with the SDK, as the billing code will."""

    def __init__(self, secret: str) -> None:
        received: list[tuple[str, str]] = []
        lock = threading.Lock()
        verifier = stripe.StripeClient("sk_test_unused")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = verifier.construct_event(body, self.headers.get("Stripe-Signature"), secret)
                except (stripe.SignatureVerificationError, ValueError):
                    self.send_response(400)
                else:
                    with lock:
                        received.append((event.id, event.type))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.received = received
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.port}/api/v1/webhooks/stripe"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(SECRET).start()
    yield running
    running.stop()


def test_events_are_signed_as_stripe_signs_them(
    server: StripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    client.v1.customers.create({"name": "Acme"})
    event = server.events[-1]
    assert (event["object"], event["livemode"], event["api_version"]) == ("event", False, API_VERSION)

    body, header = server.signed(event, SECRET)
    parsed = client.construct_event(body, header, SECRET)
    assert (parsed.id, parsed.type, parsed.data.object.name) == (event["id"], "customer.created", "Acme")
    assert stripe.Webhook.construct_event(body, header, SECRET).id == event["id"]
    assert client.v1.events.retrieve(event["id"]).type == "customer.created"

    assert server.deliver(event, receiver.url, SECRET).status == 200
    assert server.deliver(event, receiver.url, ["whsec_old_rotated", SECRET]).status == 200  # one v1 per live secret
    assert server.deliver(event, receiver.url, "whsec_forged").status == 400
    assert server.deliver(event, receiver.url, SECRET, timestamp=int(time.time()) - 3600).status == 400
    assert server.deliver(event, receiver.url, SECRET, body=body.replace(b"Acme", b"Evil")).status == 400
    assert receiver.received == [(event["id"], "customer.created")] * 2


def test_events_can_be_delivered_out_of_order_again_and_later(
    server: StripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = subscribe(server, client, plan(client), "sepa_debit")
    server.settle(succeeded=True)
    wanted = [e for e in server.events if e["type"].startswith(("checkout.session", "invoice.paid"))]
    assert types(wanted) == ["checkout.session.completed", "invoice.paid", "checkout.session.async_payment_succeeded"]

    shuffled = [wanted[2], wanted[0], wanted[0], wanted[1]]
    deliveries = server.deliver_all(receiver.url, SECRET, shuffled)
    assert [d.status for d in deliveries] == [200] * 4
    assert [kind for _, kind in receiver.received] == types(shuffled)
    updates = server.events_since(0, "customer.subscription.updated")
    assert all("previous_attributes" in e["data"] for e in updates)
    assert session.subscription.id in {e["data"]["object"]["id"] for e in updates}


# --- more of the billing lifecycle -----------------------------------------------------------


def test_a_double_click_with_one_key_makes_one_customer(server: StripeServer) -> None:
    clients = [server.client() for _ in range(8)]
    results: list[str] = []
    lock = threading.Lock()

    def create(client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create({"metadata": {"organization": "org-1"}}, {"idempotency_key": "org-1"})
        with lock:
            results.append(customer.id)

    threads = [threading.Thread(target=create, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert types(server.events) == ["customer.created"]
    assert sum(not r.replayed for r in server.requests) == 1


def test_a_declining_card_makes_the_renewal_past_due(server: StripeServer, client: stripe.StripeClient) -> None:
    sub = subscribe(server, client, plan(client)).subscription
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": sub.customer})
    client.v1.subscriptions.update(sub.id, {"default_payment_method": failing.id})
    mark = server.mark()

    server.advance_time(32 * DAY)

    renewed = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice.payments"]})
    assert renewed.status == "past_due"
    invoice = renewed.latest_invoice
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("open", 1, 2900)
    intent = client.v1.payment_intents.retrieve(invoice.payments.data[0].payment.payment_intent)
    assert (intent.status, intent.last_payment_error.code) == ("requires_payment_method", "card_declined")
    assert {"invoice.payment_failed", "payment_intent.payment_failed", "charge.failed"} <= set(
        types(server.events_since(mark))
    )
    failed = client.v1.events.list({"type": "invoice.payment_*"})
    assert [e.type for e in failed.data] == ["invoice.payment_failed", "invoice.payment_succeeded"]


def test_prorations_wait_for_the_next_invoice_and_a_new_interval_invoices_at_once(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    monthly, teams = plan(client, 2900, "month", "pro_monthly"), plan(client, 7900, "month", "teams_monthly")
    yearly = plan(client, 28800, "year", "pro_yearly")
    sub = subscribe(server, client, monthly).subscription
    item = sub["items"].data[0]
    server.advance_time(15 * DAY)
    kept = client.v1.subscriptions.update(sub.id, {"items": [{"id": item.id, "price": teams.id}]})
    assert kept.latest_invoice == sub.latest_invoice.id  # create_prorations: nothing invoiced yet

    server.advance_time(17 * DAY)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    prorations = [line for line in renewal.lines.data if line.parent.subscription_item_details.proration]
    assert len(prorations) == 2 and renewal.total == 7900 + sum(line.amount for line in prorations)

    now = server.now
    changed = client.v1.subscriptions.update(
        sub.id,
        {"items": [{"id": item.id, "price": yearly.id}], "proration_behavior": "none", "expand": ["latest_invoice"]},
    )
    period = changed["items"].data[0]
    assert period.current_period_start >= now and period.current_period_end - period.current_period_start >= 365 * DAY
    assert (changed.latest_invoice.billing_reason, changed.latest_invoice.total) == ("subscription_update", 28800)


def test_deleting_a_customer_ends_its_subscriptions(server: StripeServer, client: stripe.StripeClient) -> None:
    sub = subscribe(server, client, plan(client)).subscription
    mark = server.mark()
    client.v1.customers.delete(sub.customer)
    assert types(server.events_since(mark)) == ["customer.subscription.deleted", "customer.deleted"]
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.customers.update(sub.customer, {"name": "Again"})
    assert gone.value.code == "resource_missing"


def test_a_sepa_renewal_fails_as_scripted_at_checkout(server: StripeServer, client: stripe.StripeClient) -> None:
    price = plan(client)
    customer = client.v1.customers.create({"email": "owner@example.com"})
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id}],
            "payment_method_types": ["ideal"],
            "success_url": "https://app.example.com/ok",
        }
    )
    server.complete_checkout(session.id, "ideal", outcome="fail")  # iDEAL pays; its SEPA mandate will bounce
    sub = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["subscription"]}).subscription
    assert sub.status == "active"

    server.advance_time(32 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"  # processing
    mark = server.mark()
    server.advance_time(3 * DAY)
    settled = server.settle()

    assert len(settled) == 1
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    renewal = client.v1.invoices.list({"subscription": sub.id, "status": "open"}).data
    assert [i.billing_reason for i in renewal] == ["subscription_cycle"]
    assert "checkout.session.async_payment_failed" not in types(server.events_since(mark))  # not the first invoice


async def test_the_async_methods_over_httpx_work_the_same(server: StripeServer) -> None:
    """Kijko is asyncio code: the SDK's ``*_async`` methods on its httpx client, retries included."""
    client = server.client(http_client=stripe.HTTPXClient(), max_network_retries=2)
    price = await client.v1.prices.create_async(
        {"product_data": {"name": "Pro"}, "unit_amount": 2900, "currency": "eur", "recurring": {"interval": "month"}}
    )
    server.fail_next(1, "reset")
    customer = await client.v1.customers.create_async({"name": "Acme"}, {"idempotency_key": "async-1"})
    again = await client.v1.customers.create_async({"name": "Acme"}, {"idempotency_key": "async-1"})
    assert again.id == customer.id and price.product.startswith("prod_")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.customers.retrieve_async("cus_missing")
    assert raised.value.code == "resource_missing"
    listed = [c.id async for c in (await client.v1.customers.list_async({"limit": 1})).auto_paging_iter()]
    assert listed == [customer.id]
